from orlop.cli.main import main

main()
