"""Static files that come from an installed package instead of static/."""

from importlib.util import find_spec
from pathlib import Path

from django.contrib.staticfiles.finders import BaseFinder
from django.core.checks import Error
from django.core.files.storage import FileSystemStorage


class PlotlyFinder(BaseFinder):
    """Serves the plotly.min.js that the installed plotly package ships, as vendor/plotly.min.js,
    so the Python half of the chart library (webui/charts.py) and its JavaScript half are always
    the same release. Only that one file: the package's data folder holds other big bundles.
    The package is located without importing it."""

    name = "plotly.min.js"
    prefix = "vendor"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        package = Path(find_spec("plotly").submodule_search_locations[0])
        self.storage = FileSystemStorage(location=package / "package_data")
        self.storage.prefix = self.prefix

    def check(self, **kwargs):
        if not self.storage.exists(self.name):
            return [Error(f"The installed plotly package has no {self.storage.path(self.name)}.", id="dashboard.E001")]
        return []

    def find(self, path, find_all=False, **kwargs):
        if path != f"{self.prefix}/{self.name}":
            return [] if find_all else None
        found = self.storage.path(self.name)
        return [found] if find_all else found

    def list(self, ignore_patterns):
        yield self.name, self.storage
