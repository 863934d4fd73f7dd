"""Static dashboard assets (HTML, JS, CSS), served by routes/dashboard.py."""
