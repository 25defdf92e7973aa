"""SemiEvol (arXiv 2410.14745) as a plain library: no Prefect here; the flows wrap these phases."""
from .config import RoundConfig, load_config, parse_config
from .data import Dataset, Record, load_dataset
from .errors import InputError, SemiEvolError, TrainingError
from .round import PHASES, RoundResult, prepare, run_round

__all__ = ["RoundConfig", "load_config", "parse_config", "Dataset", "Record", "load_dataset", "InputError",
           "SemiEvolError", "TrainingError", "PHASES", "RoundResult", "prepare", "run_round"]
