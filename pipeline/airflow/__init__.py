"""Airflow glue only: the DAG factory, the deferrable rebuild sensor and its trigger, pools, and the
run state kept in Airflow. Everything it calls lives in ``pipeline.stages`` and below."""
