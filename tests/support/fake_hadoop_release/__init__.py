"""fake_hadoop_release: a test double of the Apache Hadoop release tarball (see hdfs.py for what it does)."""
