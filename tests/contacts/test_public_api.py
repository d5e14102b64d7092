import importlib
import inspect

import pytest

# The pure library modules of each package. Service modules (models, router, service) that live
# beside them are not re-exported, because importing them pulls in the database layer.
LIBRARY_MODULES = {
    "services.contacts.people": ("email", "errors", "profile", "timezone"),
    "services.contacts.attributes": ("types",),
    "services.contacts.stages": ("definitions", "machine"),
    "services.contacts.imports": ("csv_reader", "export", "mapping", "report"),
    "services.contacts.segments": ("fields", "filter", "validation", "windows"),
}
PACKAGES = list(LIBRARY_MODULES)


def public_definitions(package_name: str) -> set[str]:
    """Return the public classes and functions defined in the library modules of a package."""
    names = set()
    for module_name in LIBRARY_MODULES[package_name]:
        module = importlib.import_module(f"{package_name}.{module_name}")
        for name, value in vars(module).items():
            defined_here = getattr(value, "__module__", None) == module.__name__
            if not name.startswith("_") and defined_here and (inspect.isclass(value) or inspect.isfunction(value)):
                names.add(name)

    return names


@pytest.mark.parametrize("package_name", PACKAGES)
def test_all_is_sorted_and_unique(package_name: str) -> None:
    exported = importlib.import_module(package_name).__all__

    assert exported == sorted(set(exported))


@pytest.mark.parametrize("package_name", PACKAGES)
def test_all_names_resolve(package_name: str) -> None:
    package = importlib.import_module(package_name)

    missing = [name for name in package.__all__ if not hasattr(package, name)]

    assert missing == []


@pytest.mark.parametrize("package_name", PACKAGES)
def test_all_lists_every_public_definition(package_name: str) -> None:
    exported = set(importlib.import_module(package_name).__all__)

    assert public_definitions(package_name) - exported == set()
