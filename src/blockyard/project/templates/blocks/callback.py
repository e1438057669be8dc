if 'callback' not in globals():
    from mage_ai.data_preparation.decorators import callback


@callback('success')
def success_callback(*args, **kwargs):
    """
    Runs after the parent block succeeds.
    """
    pass


@callback('failure')
def failure_callback(*args, **kwargs):
    """
    Runs after the parent block fails.
    """
    pass
