"""The application on top of the library: the `minigrad` command (cli.py), the trainer behind
`minigrad train` (train.py) and its tasks (tasks.py). The library never imports this package."""
