"""The draw-a-digit page and its JSON API, served on uvicorn (python -m lenet_ext.serve; the
command's --help has the API). One module per job:

    model.py     the checkpoint's network and the answers for a batch of digits
    metrics.py   counters and histograms, as Prometheus text
    batcher.py   concurrent requests' digits gathered into one inference call
    app.py       the ASGI application: routes, errors, limits, lifespan
    protocol.py  uvicorn's HTTP protocol answering its parse errors in JSON, and its configuration
    server.py    the bound socket, the server run and stopped, the --workers application factory
    command.py   the command line
"""

from .app import create_app
from .batcher import Batcher
from .metrics import Metrics
from .model import Model, describe
from .server import Server, app_factory, bind, start

__all__ = ["Batcher", "Metrics", "Model", "Server", "app_factory", "bind", "create_app", "describe", "start"]
