from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import astropy.units as u
import gala.potential as gp
import numpy as np
import pytest
import torch
from astropy.coordinates import SkyCoord
from gala.units import galactic

from gala_deeppotential.df import FlowEnsemble
from gala_deeppotential.distributed import member_range
from gala_deeppotential.mocks import PlummerTruth, plummer_sample
from gala_deeppotential.phasespace import DEFAULT_GALCEN_FRAME
from gala_deeppotential.pipeline import fit

# A tiny fit whose members stop early at different epochs (measured with one
# process: best epochs 8, 11 and 9, all stopped after epoch 12), so rank 1,
# holding only member 2, is done at epoch 10 but must train on with rank 0.
MODEL = {"hidden_features": 16}
FIT = {"epochs": 30, "batch_size": 128, "lr": 5e-2, "patience": 1, "seed": 4}


def _torchrun(*args: str, timeout: float) -> subprocess.CompletedProcess:
    """Run ``torchrun --standalone --nproc-per-node=2 ARGS`` on one thread each."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def _without_wall_time(history):
    return {k: v for k, v in history.items() if k != "wall_s"}


@pytest.mark.parametrize("world_size", [1, 2, 3, 5])
@pytest.mark.parametrize("n_flows", [5, 8, 13])
def test_member_ranges_split_the_ensemble_evenly(n_flows, world_size):
    ranges = [member_range(n_flows, r, world_size) for r in range(world_size)]
    assert [k for members in ranges for k in members] == list(range(n_flows))
    assert max(map(len, ranges)) - min(map(len, ranges)) <= 1
    with pytest.raises(ValueError, match="at least"):
        member_range(world_size - 1, 0, world_size) if world_size > 1 else (
            member_range(0, 0, 1)
        )


def test_torchrun_gathers_the_single_process_ensemble(tmp_path):
    x, v = PlummerTruth().sample(1200, seed=5)
    data = np.hstack([x, v])
    np.save(tmp_path / "stars.npy", data)
    run = _torchrun(
        "-m",
        "gala_deeppotential.distributed",
        str(tmp_path / "stars.npy"),
        "--output",
        str(tmp_path / "df.pt"),
        "--n-flows=3",
        "--threads=1",
        "--hidden-features=16",
        *(f"--{key.replace('_', '-')}={value}" for key, value in FIT.items()),
        timeout=120,
    )
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["world_size"] == 2 and summary["n_flows"] == 3

    gathered = FlowEnsemble.load(tmp_path / "df.pt")
    single = FlowEnsemble(n_flows=3, **MODEL).fit(data, threads=1, **FIT)
    assert gathered.history["best_epoch"] == single.history["best_epoch"] == [8, 11, 9]
    assert _without_wall_time(gathered.history) == _without_wall_time(single.history)
    # Same seeds, same arithmetic per member: bit-identical on the CPU.
    test_x, test_v = PlummerTruth().sample(500, seed=6)
    assert torch.equal(
        gathered.log_prob(test_x, test_v), single.log_prob(test_x, test_v)
    )
    for name, value in single.flow.state_dict().items():
        assert torch.equal(gathered.flow.state_dict()[name], value), name


def test_cli_fit_distributed_equals_one_process(tmp_path):
    w = plummer_sample(1500, m=1e11 * u.Msun, b=3 * u.kpc, units=galactic, seed=1)
    stars = SkyCoord(w.pos.with_differentials(w.vel), frame=DEFAULT_GALCEN_FRAME)
    catalogue = tmp_path / "stars.ecsv"
    table = stars.icrs.to_table()
    table.rename_columns(["pm_ra_cosdec", "pm_dec"], ["pmra", "pmdec"])
    table.write(catalogue)
    options = {"epochs": 2}
    phi = {"batch_size": 256, "n_steps": 60, "n_samples": 512}
    _torchrun(
        "--no-python",
        str(Path(sys.executable).with_name("deep-potential")),
        "fit",
        str(catalogue),
        "-o",
        str(tmp_path / "model.yml"),
        "--distributed",
        "--n-flows=2",
        f"--df-options={json.dumps(options)}",
        f"--potential-options={json.dumps(phi)}",
        "--threads=1",
        "--seed=5",
        "--quiet",
        "--no-plot",
        "--checkpoint-dir",
        str(tmp_path / "checkpoint"),
        timeout=180,
    )
    shards = sorted(p.name for p in (tmp_path / "checkpoint" / "df").iterdir())
    assert shards == ["members-0-1", "members-1-2"]

    learned = gp.load(tmp_path / "model.yml")
    single = fit(
        catalogue,
        df_options={"n_flows": 2, **options},
        potential_options=phi,
        threads=1,
        seed=5,
        progress=False,
    ).potential
    q = np.random.default_rng(0).normal(scale=4.0, size=(3, 50)) * u.kpc
    # The same ensemble bit for bit, so the same Φ fit on rank 0.
    assert np.array_equal(learned.energy(q).value, single.energy(q).value)


# Every rank calls fit(distributed=True) and prints its potential's energies.
EVERY_RANK = """
import json, os, sys, warnings
import numpy as np
from gala.units import DimensionlessUnitSystem
from gala_deeppotential import fit, plummer_sample

warnings.simplefilter("ignore")
stars = plummer_sample(1200, seed=2)
result = fit(
    stars,
    units=DimensionlessUnitSystem(),
    df_options={"n_flows": 2, "epochs": 2},
    potential_options={"batch_size": 256, "n_steps": 30, "n_samples": 512},
    threads=1,
    progress=False,
    distributed=True,
)
q = np.random.default_rng(0).normal(size=(3, 8))
# Each rank writes its own file: lines printed by two processes at once can
# interleave in the shared stdout.
with open(os.path.join(sys.argv[1], f"rank{os.environ['RANK']}.json"), "w") as out:
    json.dump([os.environ["RANK"], result.potential.energy(q).value.tolist()], out)
"""


def test_every_rank_returns_the_same_result(tmp_path):
    script = tmp_path / "every_rank.py"
    script.write_text(EVERY_RANK)
    _torchrun(str(script), str(tmp_path), timeout=180)
    printed = [json.loads(path.read_text()) for path in tmp_path.glob("rank*.json")]
    assert sorted(rank for rank, _ in printed) == ["0", "1"]
    assert printed[0][1] == printed[1][1]
