"""`zoo serve`: an OpenAI-compatible HTTP API (FastAPI + uvicorn) over a continuous-batching
engine. Import this package only when serving: it needs fastapi and uvicorn."""

from .engine import Engine, EngineStats, SamplingParams
from .server import ServerThread, serve

__all__ = ["Engine", "EngineStats", "SamplingParams", "ServerThread", "serve"]
