"""The web console's static files (HTML, CSS, JavaScript), served by
``keycask.http.console``; package data, shipped in the wheel."""
