"""Thin: the image-index report page (pipeline/airflow/plugin), for Airflow's plugins folder.

The Makefile points ``AIRFLOW__CORE__PLUGINS_FOLDER`` here; a deployment copies this file into its
plugins folder, next to ``dags/image_index.py`` in its DAGs folder.
"""

from pipeline.airflow.plugin import ImageIndexReportPlugin  # noqa: F401  (Airflow finds the class here)
