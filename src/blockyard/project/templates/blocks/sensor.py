if 'sensor' not in globals():
    from mage_ai.data_preparation.decorators import sensor
if 'test' not in globals():
    from mage_ai.data_preparation.decorators import test


@sensor
def check_condition(*args, **kwargs) -> bool:
    """
    Return True once the condition this sensor waits for is met
    (a file exists, another pipeline finished, a table has new rows, ...).

    The sensor is called again until it returns True or the block times out.
    """
    return True


@test
def test_output(output, *args) -> None:
    """
    Test the output of the block.
    """
    assert output is not None, 'The output is undefined'
