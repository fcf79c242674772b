"""The spec's client RAG providers, copied from integration-patterns.md unchanged.

Only the imports the snippets take for granted (pinecone, cohere, the base classes) are
added, and :func:`register` (called from ``TestAppConfig.ready``) registers them the way
a client project would. The tests replace the module globals ``pinecone`` and ``cohere``
with fakes: the snippets use SDK calls of older SDK versions, so the fakes stand in for
the services, not for our code.
"""

import cohere
import pinecone

from rag.embeddings.base import BaseEmbeddingProvider
from rag.providers.base import BaseRetrievalProvider


class PineconeProvider(BaseRetrievalProvider):
    """Pinecone vector database integration."""
    
    key = "pinecone"
    
    def __init__(self, config: dict):
        self.index = pinecone.Index(
            config["index_name"],
            api_key=config["api_key"]
        )
    
    def retrieve(
        self, 
        query_embedding: list[float], 
        top_k: int = 5,
        filters: dict = None
    ) -> list[dict]:
        """Retrieve similar documents."""
        results = self.index.query(
            vector=query_embedding,
            top_k=top_k,
            filter=filters,
            include_metadata=True
        )
        return [
            {
                "id": match.id,
                "score": match.score,
                "content": match.metadata.get("content"),
                "metadata": match.metadata,
            }
            for match in results.matches
        ]
    
    def index_documents(self, documents: list[dict]) -> int:
        """Index documents into vector store."""
        vectors = [
            {
                "id": doc["id"],
                "values": doc["embedding"],
                "metadata": doc["metadata"],
            }
            for doc in documents
        ]
        self.index.upsert(vectors)
        return len(vectors)


class CohereEmbeddingProvider(BaseEmbeddingProvider):
    """Cohere embeddings integration."""
    
    key = "cohere"
    dimensions = 1024
    
    def embed(self, texts: list[str]) -> list[list[float]]:
        response = cohere.Client(self.api_key).embed(
            texts=texts,
            model="embed-english-v3.0"
        )
        return response.embeddings


def register():
    """What a client app's ``ready()`` does with the providers above."""
    from rag.registry import register_embedding_provider, register_retrieval_provider

    from tests.testapp.rag_fakes import HashingEmbeddingProvider

    register_retrieval_provider(PineconeProvider)
    register_embedding_provider(CohereEmbeddingProvider)
    register_embedding_provider(HashingEmbeddingProvider)
