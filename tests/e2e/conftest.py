import pytest

from tests.conftest import open_page


@pytest.fixture
def page(browser, live_server, transactional_db):
    context, page = open_page(browser, live_server.url)
    yield page
    context.close()
    assert page.problems == [], page.problems
