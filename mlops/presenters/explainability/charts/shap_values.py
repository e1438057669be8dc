from mlops.unit_3_observability.utils.explain import plot, shap_sample

# SHAP values of the XGBoost champion on 2,000 sampled trips (variables: month, rows).


@data_source
def data(month=None, rows=None, **kwargs):
    return shap_sample(month, rows)


@render(render_type='png')
def create_visualization(sample, **kwargs):
    return plot(sample, None)  # the summary (beeswarm) plot
