"""An endpoint twin: the built-in endpoint fitted to a real endpoint's records.

    twin = fit(["results/bench-llama"])        # run and bench directories -> TwinModel
    write_twin(twin, Path("twin.json"))         # a small readable file a CI job can keep
    config = sim_config(read_twin(Path("twin.json")))
    with SimProcess(config) as sim: ...         # serves it: same wire format, fitted latency

twin/fit.py is the pure fit (records -> TwinModel), twin/model.py the model and the draws the
server makes from it, twin/load.py the files around them, twin/report.py the fit's report page.
"""

from __future__ import annotations

from batchrun.twin.load import fit, load, read_twin, sim_config, write_twin
from batchrun.twin.model import TwinModel

__all__ = ["TwinModel", "fit", "load", "read_twin", "sim_config", "write_twin"]
