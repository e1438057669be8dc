from mlops.utils.analytics.data import load_data

# The course's MLflow runs (trials and final models) as one frame; see
# mlops/utils/analytics/data.py. `workspace_root` is set by Blockyard's dashboard renderer.


@data_source
def data(workspace_root=None, *args, **kwargs):
    return load_data(workspace_root)
