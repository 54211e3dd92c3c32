from tpfit.cli.app import run

run()
