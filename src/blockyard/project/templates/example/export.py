if 'data_exporter' not in globals():
    from mage_ai.data_preparation.decorators import data_exporter


@data_exporter
def export_data(rows, *args, **kwargs):
    """
    Summarise the trips. Replace this with writing to a file or a database.
    """
    total = sum(row['distance_km'] for row in rows)
    print(f'Exported {len(rows)} trips, {total:.1f} km in total')
    return {'trips': len(rows), 'total_distance_km': round(total, 2)}
