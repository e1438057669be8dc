"""Code shared by the course projects: import it as `mlops.utils...` from any block."""
