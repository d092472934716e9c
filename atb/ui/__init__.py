"""`atb db ui`: a read-only web page over the atb database (installed with `pip install 'atb[ui]'`).

`create_app(config, manager)` builds the Flask app; `serve(config, url)` binds the database and
runs it under waitress. Importing `atb.ui` needs Flask; `atb` itself never imports it at start-up.
"""

from .app import create_app
from .config import UiConfig
from .server import serve

__all__ = ["UiConfig", "create_app", "serve"]
