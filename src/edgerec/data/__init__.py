"""Data layer: loaders, cleaning, the synthetic world and the leave-one-out split."""

from edgerec.data.registry import DATASETS, load_dataset
from edgerec.data.schema import Catalog, Dataset, Interactions, LoadReport
from edgerec.data.split import LeaveOneOut, Sequences, leave_one_out
from edgerec.data.synthetic import SyntheticConfig, generate_synthetic

__all__ = [
    "DATASETS",
    "Catalog",
    "Dataset",
    "Interactions",
    "LeaveOneOut",
    "LoadReport",
    "Sequences",
    "SyntheticConfig",
    "generate_synthetic",
    "leave_one_out",
    "load_dataset",
]
