from engram_cli.cli.main import main

main()
