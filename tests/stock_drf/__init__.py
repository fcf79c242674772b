"""A fresh project with stock DRF settings; tests/automate/test_api_stock_drf.py runs
in_stock_project.py under these settings in a subprocess (DRF reads its settings into
class attributes at import, so overriding them in-process would not reproduce a project)."""
