"""The lines ``deep-potential fit`` prints about a fit, read from its report."""

from __future__ import annotations

__all__ = ["fit_summary"]

from typing import Any

import astropy.units as u

from .io import units_from_json


def fit_summary(report: dict[str, Any], seconds: float) -> str:
    """The lines ``deep-potential fit`` prints: the fit, the calibration, warnings."""
    stationarity = report["stationarity"]["median_relative_residual"]
    virial = report["virial"]
    if not virial:
        calibration = "no virial calibration (--no-virial)"
    elif virial["applied"]:
        calibration = (
            f"forces scaled by {virial['scale']:.4f} ± {virial['error']:.4f} to "
            "obey the stars' virial theorem"
        )
    else:
        calibration = "virial calibration not applied (see below)"
    lines = [
        f"fitted {report['n_stars']} stars ({report['n_dropped']} dropped) in "
        f"{seconds:.0f} s: median relative stationarity residual "
        f"{stationarity:.3f}, negative density at "
        f"{100 * report['negative_density_fraction']:.2f}% of DF samples; "
        + calibration
    ]
    rotation = report["df"].get("rotation")
    if rotation:
        lines.append(
            "the stars rotate: the flows modelled their velocities relative to a "
            f"fitted rotation curve (v0 = {rotation['v0']:.4g}, R0 = "
            f"{rotation['R0']:.4g}, the fit's units), and Φ was fitted for "
            f"{report['potential']['steps']} steps"
        )
    omega = report["potential"].get("pattern_speed")
    if omega is not None:
        lines.append(_pattern_speed_line(omega, report))
    lines += [f"warning: {text}" for text in report["warnings"]]
    if "regions" in report["stationarity"]:
        lines.append(_stationarity_line(report["stationarity"]["regions"]))
    lines.append(_survey_line(report["survey"]))
    return "\n".join(lines)


def _pattern_speed_line(omega: float, report: dict[str, Any]) -> str:
    """How the potential rotates, and how its pattern speed was found."""
    measured = report["potential"].get("pattern_speed_measurement")
    if measured is not None:
        how = (
            "measured from the stars' continuity equation as "
            f"{_km_s_kpc(measured['value'], report)} +- "
            f"{_km_s_kpc(measured['uncertainty'], report)}"
        )
    elif report["potential"]["network"]["pattern_speed"] == "fit":
        how = f"fitted with the potential as {_km_s_kpc(omega, report)}"
    else:
        how = f"given as {_km_s_kpc(omega, report)}"
    return f"the potential rotates about z at a pattern speed {how}"


def _km_s_kpc(omega: float, report: dict[str, Any]) -> str:
    """A pattern speed in the fit's units, in km/s/kpc where it has units."""
    units = report["units"]
    if units is None:
        return f"{omega:.4g} (dimensionless)"
    time = units_from_json(units)["time"]
    return f"{(omega / time).to_value(u.km / u.s / u.kpc):.4g} km/s/kpc"


def _stationarity_line(summary: dict[str, Any]) -> str:
    """Where the stars depart from stationarity in the fitted potential, if anywhere."""
    found = summary["Rz"]["significant"] + summary["xy"]["significant"]
    level = f"{summary['threshold']:g} sigma"
    if not found:
        largest = ", ".join(
            f"{summary[plane]['max_abs_z']:.1f} in ({name})"
            for plane, name in (("Rz", "R, z"), ("xy", "x, y"))
            if summary[plane]["max_abs_z"] is not None
        )
        return (
            f"stationarity: no region of the {summary['n_stars']} stars departs "
            f"at {level} (largest |z|: {largest})"
        )
    named = "; ".join(f"{r['region']} (z = {r['z']:+.1f})" for r in found[:4])
    more = f" and {len(found) - 4} more" if len(found) > 4 else ""
    return (
        f"stationarity: {len(found)} regions depart from stationarity at {level}: "
        f"{named}{more}; the method assumes a stationary DF there"
    )


def _survey_line(survey: dict[str, Any]) -> str:
    """What the fit made of the catalogue: stars per part, selection, errors."""
    n_x, n_v = survey["stars_for_positions"], survey["stars_for_velocities"]
    n_t = survey.get("stars_for_tangential_velocities", 0)
    parts = [
        f"all {n_x} stars inform the positions' density"
        + (
            f", the {n_v} with radial velocities the velocities"
            if n_v < n_x
            else " and the velocities"
        )
        + (
            f", the other {n_t} their tangential velocities (radial ones "
            "integrated out)"
            if n_t
            else ""
        )
    ]
    selection = survey["selection"]
    if selection:
        parts.append(
            f"Φ was fitted inside the selection function ({selection['kind']}), "
            f"{selection['margin_kpc']:.3g} kpc from its edges"
            + (
                ", and the flows model the DF across those edges (truncated likelihood)"
                if survey.get("truncated_likelihood")
                else ""
            )
            + (
                ", and the flows see its distance limit's ball mapped onto all "
                "of space (ball map)"
                if survey.get("ball_map")
                else ""
            )
        )
    deconvolution = survey["deconvolution"]
    if deconvolution:
        epochs = deconvolution.get("error_epochs")
        parts.append(
            "the measurement errors were deconvolved "
            f"({deconvolution['error_samples']} Monte Carlo draws per star"
            + (f", over the last {epochs} epochs)" if epochs else ")")
        )
    else:
        parts.append("the measurements were taken as exact")
    return "survey: " + "; ".join(parts)
