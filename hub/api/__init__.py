"""The hub's HTTP side: JSON API, dashboard, webhook, metrics (``create_api_app``).

``hub.api.app`` builds the aiohttp application; ``hub.api.views`` reads the store for it
and for ``hub status`` without a running hub; ``hub.api.client`` is how the CLI finds and
talks to a running hub; ``hub.api.token`` keeps the API token.
"""
