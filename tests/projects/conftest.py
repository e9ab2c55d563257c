from tests.projects.test_edl_support import (  # noqa: F401 - fixtures for every test module here
    clean_edl_store_fixture,
    make_media_fixture,
    make_project_fixture,
    project_fixture,
)
