from blockyard.ml.monitoring_store import MonitoringStore

MODEL = 'nyc-taxi-duration'

# The newest check of each month (a month checked twice shows its latest figures).
points = {p['period']: p['value'] for p in MonitoringStore.for_workspace().series(MODEL, 'drift_share')}
x = sorted(points)
y = [[points[m] for m in x]]
