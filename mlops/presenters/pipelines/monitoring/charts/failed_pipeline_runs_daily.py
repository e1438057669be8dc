# The pipeline's runs (Mage's pipeline_runs frame), only the failed ones.


@data_source
def d(df):
    return df[df['status'] == 'failed']
