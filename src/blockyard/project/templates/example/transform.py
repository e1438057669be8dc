if 'transformer' not in globals():
    from mage_ai.data_preparation.decorators import transformer
if 'test' not in globals():
    from mage_ai.data_preparation.decorators import test


@transformer
def transform(trips, *args, **kwargs):
    """
    Drop short trips and add the average speed of each trip.

    `min_distance_km` is a pipeline variable (see the pipeline's metadata.yaml).
    """
    min_distance_km = float(kwargs.get('min_distance_km', 1.0))
    rows = []
    for trip in trips:
        if trip['distance_km'] < min_distance_km:
            continue
        speed = trip['distance_km'] / (trip['duration_min'] / 60)
        rows.append({**trip, 'speed_kmh': round(speed, 1)})
    return rows


@test
def test_output(output, *args) -> None:
    assert all('speed_kmh' in row for row in output), 'Every row needs speed_kmh'
