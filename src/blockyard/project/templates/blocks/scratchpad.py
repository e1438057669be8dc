# Scratchpad: code here is for exploring; it is not run as part of the pipeline.
