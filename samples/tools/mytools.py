"""Deterministic tools for the samples: `batchrun run ... --tool-module samples/tools/mytools.py`.

batchrun calls these with the arguments the model produced. Those arguments are untrusted
input: check them as you would any user input.
"""

from __future__ import annotations

_FACTORS = {("km", "mi"): 0.621371, ("mi", "km"): 1.609344, ("kg", "lb"): 2.204623, ("lb", "kg"): 0.453592}

_CAPITALS = {"france": "Paris", "japan": "Tokyo", "kenya": "Nairobi", "peru": "Lima", "canada": "Ottawa"}


def convert_units(value: float, from_unit: str, to_unit: str) -> dict:
    """`value` in `from_unit`, expressed in `to_unit`."""
    if from_unit == to_unit:
        return {"value": value, "unit": to_unit}
    factor = _FACTORS.get((from_unit, to_unit))
    if factor is None:
        raise ValueError(f"cannot convert {from_unit} to {to_unit}")
    return {"value": round(value * factor, 4), "unit": to_unit}


def lookup_capital(country: str) -> dict:
    """The capital of `country`, or an error the model can read."""
    capital = _CAPITALS.get(country.strip().lower())
    return {"country": country, "capital": capital} if capital else {"error": f"unknown country {country!r}"}
