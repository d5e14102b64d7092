"""Score reports for the dashboard: how the stored scores of one model are spread."""
