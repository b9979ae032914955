"""The end-to-end job's stack, its renderer and the render's test (the job itself runs on GitHub only)."""
