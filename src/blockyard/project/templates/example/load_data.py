if 'data_loader' not in globals():
    from mage_ai.data_preparation.decorators import data_loader
if 'test' not in globals():
    from mage_ai.data_preparation.decorators import test


@data_loader
def load_data(*args, **kwargs):
    """
    A few taxi trips as a list of records (plain Python, no pandas needed).
    """
    return [
        {'trip_id': 1, 'distance_km': 2.5, 'duration_min': 9.0},
        {'trip_id': 2, 'distance_km': 0.4, 'duration_min': 3.5},
        {'trip_id': 3, 'distance_km': 11.2, 'duration_min': 24.0},
        {'trip_id': 4, 'distance_km': 6.8, 'duration_min': 17.5},
        {'trip_id': 5, 'distance_km': 1.9, 'duration_min': 8.0},
    ]


@test
def test_output(output, *args) -> None:
    assert isinstance(output, list) and output, 'Expected a non-empty list of trips'
