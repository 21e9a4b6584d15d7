"""One image-index DAG per config file in ``dags/indexes/*.yaml``.

Parsing reads only those local YAML files: no network, database or Variable access at import.
An invalid config fails the import with a message naming the file, the field and the bad value.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.airflow.dag_factory import build_dag, dag_id_for
from pipeline.config import load_index_configs

for _path, _config in load_index_configs(Path(__file__).parent / "indexes"):
    globals()[dag_id_for(_config)] = build_dag(_config, _path)
