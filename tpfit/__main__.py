from tpfit.cli.app import main

main()
