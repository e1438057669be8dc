from blockyard.ml.monitoring_store import MonitoringStore

MODEL = 'nyc-taxi-duration'
# `workspace_root` is set by Blockyard's dashboard renderer.

store = MonitoringStore.for_workspace(workspace_root)
rmse = {p['period']: p['value'] for p in store.series(MODEL, 'rmse')}
baseline = {p['period']: p['value'] for p in store.series(MODEL, 'baseline_rmse')}
x = sorted(rmse)
y = [[rmse[m] for m in x], [baseline.get(m) for m in x]]
