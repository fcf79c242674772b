"""The spec's "Integration Test Fixtures" example, as a client project writes it.

The spec's ``"..."`` placeholders are filled in (a config, an input), and one fixture is
added: the Jira API is on the internet, so the test answers it with ``mock_http`` (a
fixture of the same pytest plugin). ``connector_factory`` comes from the ``pytest11``
entry point: there is no conftest import. ``test_client_project.py`` runs this same file
in a separate client project.
"""

import pytest
from automate_testing.fixtures import connector_factory

from tests.testapp.connectors import JiraConnector


@pytest.fixture(autouse=True)
def jira_api(mock_http):
    mock_http.post(
        "https://test.atlassian.net/rest/api/3/issue", json={"key": "TEST-1", "id": "10001"}
    )
    return mock_http


@pytest.fixture
def jira_connector(connector_factory):
    return connector_factory(
        JiraConnector,
        config={"url": "https://test.atlassian.net", "email": "test@example.com", "api_token": "test-token"}
    )

def test_full_flow(jira_connector):
    result = jira_connector.execute_action("create_issue", {"summary": "Test Issue"})
    assert "key" in result
