      * Account master record of a bank's mainframe: fixed length, 134 bytes, EBCDIC (cp037).
      * Read by the `cobol` reader plugin (examples/plugins/cobol_reader).
       01  ACCOUNT-RECORD.
           05  ACCT-ID                 PIC 9(10).
           05  ACCT-TYPE               PIC X(2).
           05  CUSTOMER-NAME           PIC X(30).
           05  OPEN-DATE               PIC 9(8).
           05  BRANCH-CODE             PIC S9(4) COMP.
           05  BALANCE                 PIC S9(11)V99 COMP-3.
           05  CREDIT-LIMIT            PIC S9(7)V99 COMP-3.
           05  INTEREST-RATE           PIC 9V9(4).
           05  LAST-TXN-AMOUNT         PIC S9(7)V99.
           05  MONTHLY-BALANCES        PIC S9(9)V99 COMP-3
                                       OCCURS 3 TIMES.
           05  ADDRESS-INFO.
               10  CITY                PIC X(20).
               10  POSTCODE            PIC X(8).
           05  ACCT-FLAGS              PIC X(4).
           05  ACCT-FLAG-DIGITS REDEFINES ACCT-FLAGS
                                       PIC 9(4).
           05  FILLER                  PIC X(6).
