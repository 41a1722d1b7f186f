"""The real-time scoring service: FastAPI over the Feast online store and the registered models.

`app.create_app(settings)` builds the service; `lead-scoring serve` runs it with uvicorn.
"""
