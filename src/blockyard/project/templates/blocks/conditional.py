if 'condition' not in globals():
    from mage_ai.data_preparation.decorators import condition


@condition
def evaluate_condition(*args, **kwargs) -> bool:
    """
    Return False to skip the block this condition is attached to.
    """
    return True
