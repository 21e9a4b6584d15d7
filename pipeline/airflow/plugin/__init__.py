"""The report page as an Airflow plugin: run reports per index, their figures over time, and each run's
smoke queries with the query image and its hits as thumbnails.

Airflow's API server mounts the FastAPI app (``pipeline.airflow.plugin.app``) at ``/image-index`` and
the UI links it in its navigation ("Browse" → "Image index reports", shown inside the UI). Airflow
loads the plugin from ``plugins/image_index_report.py`` in its plugins folder, which imports this
class. Importing it costs FastAPI only: every Airflow process loads plugins, tasks included.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from pipeline.airflow.plugin.app import URL_PREFIX, create_app


class ImageIndexReportPlugin(AirflowPlugin):
    name = "image_index_reports"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "Image index reports"}]
    external_views = [
        {
            "name": "Image index reports",
            "href": f"{URL_PREFIX}/",
            "destination": "nav",
            "category": "browse",
            "url_route": "image-index-reports",  # shown inside the Airflow UI, at /plugin/image-index-reports
        }
    ]
