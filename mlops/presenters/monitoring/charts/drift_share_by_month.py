from blockyard.ml.monitoring_store import MonitoringStore

MODEL = 'nyc-taxi-duration'
# `workspace_root` is set by Blockyard's dashboard renderer.

# The newest check of each month (a month checked twice shows its latest figures).
points = {p['period']: p['value'] for p in MonitoringStore.for_workspace(workspace_root).series(MODEL, 'drift_share')}
x = sorted(points)
y = [[points[m] for m in x]]
