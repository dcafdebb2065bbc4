// The attack suite (test/security/attacks/) against a runner started as root.
import { attackSuite } from './attacks/suite.js';

attackSuite('root');
