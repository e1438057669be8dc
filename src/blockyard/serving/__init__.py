"""Online inference: a warm model from the MLflow registry, answering over HTTP.

- `features`: request parsing (MLflow's scoring payloads), validation, the course's
  feature transform (looked up in the workspace, never copied here).
- `model`: loading a registry alias (model + DictVectorizer), predicting, and the
  holder that polls the alias and swaps versions atomically.
- `predlog`: every prediction, logged asynchronously to Parquet files for monitoring.
- `app`: the FastAPI app of `blockyard serve` (MLflow's protocol + a batch form).
- `mage_hook`: what lets the Mage trigger routes answer from the warm model for
  pipelines marked `serve:` in their metadata.yaml.

Import-light: heavy libraries are imported inside functions.
"""
