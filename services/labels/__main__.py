from lumenal.labels.server import main

main()
