"""The spec's "Contract Tests" example, as a client project writes it.

Copied from integration-patterns.md ("Testing Integrations"); the only change is the
``"id"`` in the mocked Jira response, which the spec's JiraConnector reads and the spec's
example forgets. ``test_client_project.py`` runs this same file in a separate client project.
"""

from automate_testing.contracts import ConnectorContractTest

from tests.testapp.connectors import JiraConnector


class TestJiraConnector(ConnectorContractTest):
    connector_class = JiraConnector
    
    def get_config(self):
        return {
            "url": "https://test.atlassian.net",
            "email": "test@example.com",
            "api_token": "test-token",
        }
    
    def test_create_issue_success(self):
        with self.mock_http() as mock:
            mock.post("/rest/api/3/issue", json={"key": "TEST-1", "id": "10001"})
            
            result = self.connector.execute_action("create_issue", {
                "summary": "Test Issue"
            })
            
            assert result["key"] == "TEST-1"
