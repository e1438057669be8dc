if 'data_loader' not in globals():
    from mage_ai.data_preparation.decorators import data_loader
if 'test' not in globals():
    from mage_ai.data_preparation.decorators import test


@data_loader
def load_data(*args, **kwargs):
    """
    Load data from any source.

    Pipeline variables and run information arrive in kwargs
    (e.g. kwargs['execution_date']).

    Returns:
        Anything: a list of records, a dictionary, a data frame, ...
    """
    # Specify your data loading logic here

    return {}


@test
def test_output(output, *args) -> None:
    """
    Test the output of the block.
    """
    assert output is not None, 'The output is undefined'
