"""The spec's client LLM provider, copied from integration-patterns.md unchanged.

Only the imports the snippet takes for granted (requests, httpx) are added. It is
registered from TestAppConfig.ready(), the way the spec's "Registration" section shows.
"""

import httpx
import requests

from automate_llm.providers.base import BaseLLMProvider
from pydantic import BaseModel

class MyLLMConfig(BaseModel):
    api_key: str
    endpoint: str
    model: str = "default"

class MyLLMProvider(BaseLLMProvider):
    """Custom LLM provider."""
    
    key = "my_llm"
    display_name = "My LLM Service"
    
    @classmethod
    def config_schema(cls) -> type[BaseModel]:
        return MyLLMConfig
    
    def __init__(self, config: dict, ctx):
        self.cfg = MyLLMConfig(**config)
        self.ctx = ctx
    
    def chat(self, messages: list[dict], **kwargs) -> str:
        """Synchronous chat completion."""
        response = requests.post(
            f"{self.cfg.endpoint}/chat",
            headers={"Authorization": f"Bearer {self.cfg.api_key}"},
            json={"messages": messages, "model": self.cfg.model}
        )
        return response.json()["content"]
    
    async def achat(self, messages: list[dict], **kwargs) -> str:
        """Async chat completion."""
        async with httpx.AsyncClient() as client:
            response = await client.post(...)
            return response.json()["content"]
    
    def count_tokens(self, text: str) -> int:
        """Estimate token count."""
        return len(text) // 4  # Rough estimate
