# The pipeline's runs (Mage's pipeline_runs frame), only the completed ones.


@data_source
def d(df):
    return df[df['status'] == 'completed']
