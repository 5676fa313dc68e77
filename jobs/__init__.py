"""Command-line jobs: the hydra-composed entry points behind ``splatworld COMMAND`` (generate, observe,
train-dynamics, eval-dynamics, imagine, evaluate, benchmark, plan, demo, orbit). Library layers never
import this package; jobs import any of them."""
