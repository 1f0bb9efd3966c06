"""One module per route: ``runs`` (/), ``run`` (/run/<id>)."""
