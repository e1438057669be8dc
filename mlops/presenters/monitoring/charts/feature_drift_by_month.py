from blockyard.ml.monitoring_store import FEATURE_DRIFT, MonitoringStore

MODEL = 'nyc-taxi-duration'
# `workspace_root` is set by Blockyard's dashboard renderer.
FEATURES = ['trip_distance', 'passenger_count', 'PULocationID', 'DOLocationID']

store = MonitoringStore.for_workspace(workspace_root)
series = {f: {p['period']: p['value'] for p in store.series(MODEL, FEATURE_DRIFT, f)} for f in FEATURES}
x = sorted(set().union(*[s.keys() for s in series.values()]))
y = [[series[f].get(m) for m in x] for f in FEATURES]
